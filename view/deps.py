"""What every page's routes share: the catalog of the app serving them."""

from __future__ import annotations

from fastapi import Request

from palaestra.view.catalog import Catalog

__all__ = ["catalog_of"]


def catalog_of(request: Request) -> Catalog:
    """The catalog of the app handling ``request`` (use as ``Depends(catalog_of)``)."""
    return request.app.state.catalog
