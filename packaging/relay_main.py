"""The script PyInstaller freezes into `dist/relay`: the same entry point as the console script."""

from relay_cli.app import main

main()
