from domicile.migrations.env_common import run
from domicile.shards.catalog_schema import metadata

run(metadata)
