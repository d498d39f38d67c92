"""imgforge: hardened, non-root nginx images for static sites, carried into a GitOps repo.

The library is usable without the CLI: load a catalog with ``imgforge.config.load_catalog``, then
``imgforge.render``, ``imgforge.build``, ``imgforge.verify``, ``imgforge.registry``,
``imgforge.gitops`` and ``imgforge.forge``, in that order; no module reaches back up.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
