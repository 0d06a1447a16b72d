"""``python -m sandbox.demo``: the whole product on one machine (``make demo``).

``world`` builds the demo's datasets, users and policies; ``hub`` runs JupyterHub with the gateway
as a hub service; ``isolation`` prepares Unix users when run as root; ``__main__`` ties them up.
"""
