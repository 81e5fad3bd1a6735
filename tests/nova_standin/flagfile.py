"""nova.conf parsing for the stand-in: the seed's gflags `--key=value` flagfile.

Accepted, one per line:
  --key=value        a flag
  --key              boolean true
  --nokey            boolean false (read through get_bool('key'))
  --flagfile=PATH    nested flagfile (relative paths: as given, else next to the including file)
  # ...              comment (also after whitespace)
Also tolerated, so an ini-style nova.conf works too: `[DEFAULT]` headers and `key = value` lines
(keys in sections other than DEFAULT are ignored). Later values win, like gflags.
"""
import os
import sys


class FlagError(Exception):
    pass


class Flags:
    def __init__(self):
        self.values = {}      # key -> str (bool flags: 'True'/'False')
        self.files = []

    # -- loading ---------------------------------------------------------------
    def load(self, path, _depth=0, _base=None):
        if _depth > 10:
            raise FlagError("flagfile nesting too deep at %s" % path)
        real = path
        if not os.path.isabs(path) and not os.path.exists(path) and _base:
            real = os.path.join(_base, path)
        try:
            with open(real, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise FlagError("cannot read flagfile %s: %s" % (path, e)) from e
        self.files.append(os.path.abspath(real))
        section = "DEFAULT"
        for lineno, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#") or line.startswith(";"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            if line.startswith("--"):
                body = line[2:]
            elif "=" in line:
                body = line
            else:
                print("flagfile %s:%d: ignored line %r" % (real, lineno, raw), file=sys.stderr)
                continue
            if section != "DEFAULT":
                continue
            if "=" in body:
                key, value = body.split("=", 1)
                key, value = key.strip(), value.strip()
            else:
                key, value = body.strip(), None
            if key == "flagfile":
                self.load(value, _depth + 1, os.path.dirname(os.path.abspath(real)))
                continue
            if value is None:
                if key.startswith("no") and len(key) > 2:
                    self.values[key[2:]] = "False"
                    self.values.pop(key, None)
                else:
                    self.values[key] = "True"
            else:
                self.values[key] = value
        return self

    # -- access ----------------------------------------------------------------
    def get(self, key, default=None):
        v = self.values.get(key)
        return default if v is None or v == "" else v

    def get_int(self, key, default):
        v = self.get(key)
        try:
            return default if v is None else int(v)
        except ValueError:
            raise FlagError("flag --%s=%s: expected an integer" % (key, v)) from None

    def get_bool(self, key, default=False):
        v = self.get(key)
        if v is None:
            return default
        s = v.lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise FlagError("flag --%s=%s: expected a boolean" % (key, v))


def load_flags(path):
    return Flags().load(path)
