"""intake's HTTP routes: thin, they parse, authorise and hand over to the domain modules."""
