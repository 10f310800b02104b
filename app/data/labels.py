"""What names a market: an exchange label and a symbol, checked and normalised (pure)."""
from __future__ import annotations

import re

from app.errors import InputError

__all__ = ["check_exchange_name", "check_symbol"]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9^][A-Za-z0-9_.:/\-]{0,63}$")


def check_exchange_name(exchange: str) -> str:
    """An exchange is a label for where candles come from: a ccxt id (``binanceus``), a
    stock exchange (``nasdaq``, ``xlon``), a broker (``oanda``), ``synthetic``, ...; up to
    64 letters, digits, ``_``, ``.`` or ``-``. Returned lower-cased. Only ``fetch`` needs
    a ccxt id (``check_ccxt_exchange``)."""
    key = str(exchange).strip()
    if not _LABEL.match(key):
        raise InputError(f"exchange {exchange!r} is not a label (1-64 letters, digits, _ . -)",
                         field="exchange", hint="for example binanceus, nasdaq or oanda")
    return key.lower()


def check_symbol(symbol: str) -> str:
    """A symbol as the market names it: ``BTC/USDT``, ``GOOG``, ``EURUSD``, ``ES=F``...;
    upper-cased (``fetch`` needs a ccxt market, BASE/QUOTE, and checks it there)."""
    text = str(symbol).strip()
    if not _SYMBOL.match(text.replace("=", "-")):
        raise InputError(f"symbol {symbol!r} is not a symbol (1-64 letters, digits, / _ . : - =)",
                         field="symbol", hint="for example BTC/USDT or GOOG")
    return text.upper()
