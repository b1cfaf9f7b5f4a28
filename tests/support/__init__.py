"""What the tests share besides fixtures (those are in the conftests): deployments on real
databases, a throw-away PostgreSQL cluster, engines without statement pools, the app in-process,
the command line, direct looks at the shards, a SeaweedFS S3 server, free ports."""
