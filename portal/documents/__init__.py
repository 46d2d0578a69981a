"""Money documents: invoices (and, to come, credit notes), numbered without gaps."""
