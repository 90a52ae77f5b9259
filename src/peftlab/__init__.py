"""peftlab: train, evaluate and rank every PEFT method on a dataset, side by side.

The package layout follows the data flow:
config -> data -> models + methods -> tasks -> train -> evaluate -> store -> report / serve.
"""

from peftlab.errors import PeftlabError
from peftlab.logs import quiet_library_notices

quiet_library_notices()

__version__ = "0.1.0"
__all__ = ["PeftlabError", "__version__"]
