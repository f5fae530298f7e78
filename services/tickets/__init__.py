"""tickets: complaint, repair and inquiry tickets, their lifecycle, and the SLA engine."""
