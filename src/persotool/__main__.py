from persotool.cli import main

main()
