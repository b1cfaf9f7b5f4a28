"""What the tests share besides fixtures (those are in tests/conftest.py): deployments on real
databases, the app in-process, the command line, looks at the shards' databases, S3."""
