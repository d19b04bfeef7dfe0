"""The one exception type users catch: every message names the problem and the fix."""


class EdgegenError(Exception):
    pass
