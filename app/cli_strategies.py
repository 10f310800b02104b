"""`trad strategies [NAME]`: the strategies Trad can train and their parameter spaces, as
``GET /api/v2/strategies`` lists them."""
from __future__ import annotations

import json
import sys

__all__ = ["register", "describe_param"]


def describe_param(param: dict) -> str:
    """One parameter of a strategy's space, as a person reads it.

    >>> describe_param({"name": "fast", "type": "int", "low": 2, "high": 50, "step": 1,
    ...                 "log": False, "default": 10, "help": ""})
    'int 2..50, default 10'
    >>> describe_param({"name": "side", "type": "categorical", "choices": [False, True],
    ...                 "default": False, "help": "go short"})
    'one of false, true, default false; go short'
    """
    def text(value):
        return json.dumps(value) if isinstance(value, bool) else str(value)

    if param["type"] == "categorical":
        what = "one of " + ", ".join(text(c) for c in param["choices"])
    else:
        step = param.get("step")
        what = (f"{param['type']} {param['low']:g}..{param['high']:g}"
                + (f" step {step:g}" if step and not (param["type"] == "int" and step == 1) else "")
                + (" (log scale)" if param.get("log") else ""))
    what += f", default {text(param['default'])}"
    return what + (f"; {param['help']}" if param.get("help") else "")


def _print_one(info: dict, out) -> None:
    out.write(f"{info['name']} v{info['version']}: {info['description']}\n")
    width = max((len(p["name"]) for p in info["parameters"]), default=0)
    for p in info["parameters"]:
        out.write(f"  {p['name']:<{width}}  {describe_param(p)}\n")
    for constraint in info["constraints"]:
        out.write(f"  where {constraint}\n")


def cmd_strategies(args) -> int:
    from app.strategies.registry import all_strategies, get_strategy

    out = sys.stdout
    if args.name:
        info = get_strategy(args.name).describe()
        if args.json:
            print(json.dumps(info))
        else:
            _print_one(info, out)
        return 0
    items = [s.describe() for s in all_strategies()]
    if args.json:
        print(json.dumps({"strategies": items, "count": len(items)}))
        return 0
    for number, info in enumerate(items):
        if number:
            out.write("\n")
        _print_one(info, out)
    return 0


def register(subparsers) -> None:
    """Add `strategies` to the `trad` command's subparsers."""
    p = subparsers.add_parser("strategies", help="strategies and their parameter spaces")
    p.add_argument("name", nargs="?", metavar="NAME", help="one strategy (case-insensitive)")
    p.add_argument("--json", action="store_true", help="as GET /api/v2/strategies[/NAME] answers")
    p.set_defaults(func=cmd_strategies)
