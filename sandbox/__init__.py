"""sandbox: an enclave for authorised operation of public data (原始数据不出域、数据可用不可见).

Public modules, in the order a query flows through them:

- ``sandbox.catalog``   datasets as the data owner declares them (metadata, ingest, registry)
- ``sandbox.policies``  who may query what: the pure policy engine and the access workflow
- ``sandbox.query``     the DP engine: parse, validate, rewrite, plan, execute, noise, release
- ``sandbox.budget``    exact privacy-budget units and the budget state a query is checked against
- ``sandbox.control``   the control plane: users, access lifecycle, admission, lifetime ledger, audit
- ``sandbox.audit``     the hash-chained audit log and its verification
- ``sandbox.store``     control-plane state (SQLAlchemy: SQLite or PostgreSQL)
- ``sandbox.auth``      authenticators (API tokens, JupyterHub)
- ``sandbox.api``       the FastAPI gateway
- ``sandbox.client``    the analyst's Python client and ``%%dpsql`` magic
- ``sandbox.cli``       the ``sandbox`` command line
"""

__version__ = "0.1.0"
