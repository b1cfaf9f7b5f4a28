from migrations.env_common import run
from shards.schema import metadata

run(metadata)
