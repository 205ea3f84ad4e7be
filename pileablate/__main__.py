from pileablate.cli import main

main()
