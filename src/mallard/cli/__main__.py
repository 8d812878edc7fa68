from mallard.cli import main

main()
