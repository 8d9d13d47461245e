"""HTTP-triggered functions: one Blueprint per module, thin adapters around `shared/`.

`function_app.py` registers each module's `bp`. Adapters read settings at call time, call one
`shared` function and encode its result; no domain logic lives here.
"""
