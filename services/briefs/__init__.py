"""briefs: an agency's client dossiers, briefs and sign-offs, proposal rounds, traffic, estimates, reports."""
