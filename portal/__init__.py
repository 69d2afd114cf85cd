"""The citizen portal and inspector console: a server-rendered web app over the consent and
audit services (DESIGN §2). ``portal.app.create_app`` builds it and the kernel's web server
(``cdx.webserver.serve``) runs it; ``portal.instance.serve_instance`` runs it over an
instance's data directory."""
