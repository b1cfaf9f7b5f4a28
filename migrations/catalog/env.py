from domicile.migrations.env_common import run

run()
