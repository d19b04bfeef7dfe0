from ..runtime.errors import EdgegenError


class ExportError(EdgegenError):
    """A checkpoint or an output directory that cannot be exported as asked."""
