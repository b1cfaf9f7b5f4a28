from domicile.migrations.env_common import run
from domicile.shards.schema import metadata

run(metadata)
