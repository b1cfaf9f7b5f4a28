from domicile.router.cli import main

main()
