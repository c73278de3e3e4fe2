from avprep.cli import app

app()
