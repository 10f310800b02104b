"""Flower reads this file (its default --conf) when started from the checkout, as the
Procfile and trad-flower.service do: it refuses to start without authentication, whatever
the command line forgot. Flower's own FLOWER_BASIC_AUTH variable, --basic-auth or --auth
(OAuth) satisfy it."""
import os
import sys

_given = any(a.startswith(("--basic-auth", "--basic_auth", "--auth")) for a in sys.argv)
if not (_given or os.environ.get("FLOWER_BASIC_AUTH") or os.environ.get("FLOWER_AUTH")):
    sys.stderr.write("flower: refusing to start without authentication; set "
                     "FLOWER_BASIC_AUTH=user:password (or pass --basic-auth or --auth)\n")
    raise SystemExit(2)
