from bastionpay.cli.main import main

main()
