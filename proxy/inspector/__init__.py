"""The web inspector at ``/ui``: a small static app, bundled in the package, over the JSON API."""
