"""Users, roles, login/logout, Bearer JWTs for the API and the `users` CLI."""
