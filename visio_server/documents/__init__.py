"""Documents of a call on the server: uploads, downloads, device commands, export, purge.

``service.Documents`` is the façade the edge and the HTTP routes use; its module
docstring says which part does what.
"""

from .errors import DocumentError
from .service import Documents

__all__ = ["DocumentError", "Documents"]
