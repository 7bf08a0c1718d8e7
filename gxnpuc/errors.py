"""User-facing errors. Each renders as one line: `<where>: <what> (<what is accepted>)`.

The CLI prints `gxnpuc: error: ` + str(err) and exits 1; nothing else may print a traceback
for a user mistake.
"""


class GxnpucError(Exception):
    """A problem with the user's input that the user can fix."""

    def __init__(self, where: str, what: str, accepted: str = ""):
        self.where, self.what, self.accepted = where, what, accepted
        super().__init__(self.line())

    def line(self) -> str:
        tail = f" ({self.accepted})" if self.accepted else ""
        return f"{self.where}: {self.what}{tail}".replace("\n", " ")


class ConfigError(GxnpucError):
    """Bad config.yaml: syntax, keys, types, names, paths."""


class ModelError(GxnpucError):
    """The model file cannot be read, or holds bad values (NaN/Inf, unknown shapes)."""


class CompileError(GxnpucError):
    """A compiler stage failed on a valid-looking model (also graph verification)."""


class UnsupportedOpError(GxnpucError):
    """One or more ops the NPU cannot run; lists every one of them at once."""

    def __init__(self, where: str, items: list[tuple[str, str, str]]):
        self.items = items  # (node name, framework op type, reason)
        listed = "; ".join(f"{n} [{t}]: {r}" for n, t, r in items)
        super().__init__(where, f"{len(items)} unsupported op(s): {listed}",
                         "see `gxnpuc -L` for the supported ops")


class OutputError(GxnpucError):
    """The output file cannot be written."""
