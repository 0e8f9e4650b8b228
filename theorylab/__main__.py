from theorylab.cli import entry

entry()
