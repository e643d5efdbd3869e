from daisymail.cli.main import main

main()
