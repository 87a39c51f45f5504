from outfitrec.cli import main

main()
