from migrations.env_common import run
from shards.catalog_schema import metadata

run(metadata)
