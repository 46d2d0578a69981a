"""gunicorn settings read from the working directory by every `gunicorn wsgi:app`.

The access log leaves out query strings and referers: Stripe.js returns customers to
/checkout/<order>/complete?payment_intent_client_secret=..., and secrets stay out of logs.
"""

accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
# A request may wait on Stripe (2 tries of at most 10 s, stripe_gateway.py): stay above that.
timeout = 60
# The runtime control socket is not used; without a writable $HOME it only logs errors.
control_socket_disable = True
