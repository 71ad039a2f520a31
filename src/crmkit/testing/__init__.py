"""crmkit's test kit for users and plugin authors (needs the ``testing`` extra).

* ``crmkit.testing.strategies``: Hypothesis strategies for customers, histories, money...
  and records of any declared aggregate (``records(Cls)``).
* ``crmkit.testing.aggregates``: the records references need (``add_targets``) and
  example records of any declared aggregate, without Hypothesis.
* ``crmkit.testing.probe``: the probe aggregates, one field and one reference of every kind.
* ``crmkit.testing.conformance``: the backend conformance suite, runnable against any URL.
"""
