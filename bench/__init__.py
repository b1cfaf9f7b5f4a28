"""The benchmark suite: what residency costs against a single-region service (``make bench``).

``python -m bench`` builds a throw-away deployment on the local PostgreSQL and Redis, runs every
workload against domicile and the baselines in interleaved repeats, prints a table and writes
``bench/RESULTS.md``. Nothing here is a test: speed lives only in bench/.
"""
