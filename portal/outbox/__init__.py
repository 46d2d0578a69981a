"""Side effects of state changes (order-service notifications, receipt e-mails), written in
the same transaction as the change and sent once by jobs."""
