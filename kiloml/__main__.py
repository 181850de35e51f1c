from kiloml.cli import main

main()
