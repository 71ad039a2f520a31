"""crmkit's test kit for users and plugin authors (needs the ``testing`` extra).

* ``crmkit.testing.strategies``: Hypothesis strategies for customers, histories, money...
* ``crmkit.testing.conformance``: the backend conformance suite, runnable against any URL.
"""
