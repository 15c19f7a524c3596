"""`make scenarios`: measured scenarios in which splitting the pipeline may pay, at equal budgets.

Each scenario is a module exposing ``SCENARIO`` (`base.Scenario`); `base` is the interface and the
registry, `run` the runner behind ``python -m benchmarks.scenarios``, `document` the report,
`regime` the sentence the bench verdict can end with (its regime and the scenario that could
reverse it).

- ``planner`` (1): price replica sets as Kubernetes would, scale only the hot stage;
- ``memory`` (2): a model big in memory, copies per gunicorn worker against one inference service;
- ``batching`` (3): one model server batching calls from every gateway worker;
- ``ship`` (4): ship a change to one stage under load.
"""
