from django.core.management.base import BaseCommand, CommandError

from helpdesk.demo import credentials_file, ensure_demo_accounts, seed_demo

DEFAULT_ORIGINS = ["http://127.0.0.1:8000", "http://localhost:8000"]


class Command(BaseCommand):
    help = (
        "Create the demo business (Acme Outfitters) with its knowledge base, and the demo "
        "accounts admin, agent and manager. Safe to run again: nothing is duplicated and no "
        "password is reset."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--origin",
            action="append",
            default=[],
            metavar="URL",
            help=(
                "Another origin allowed to embed the demo widget (repeatable). "
                f"Always allowed: {', '.join(DEFAULT_ORIGINS)}."
            ),
        )
        parser.add_argument(
            "--base-url",
            metavar="URL",
            help="Where the demo is served (e.g. http://127.0.0.1:8000): print its URLs.",
        )

    def handle(self, *args, **options):
        origins = [*DEFAULT_ORIGINS, *options["origin"]]
        try:
            site, created = seed_demo(origins=origins)
        except ValueError as exc:
            raise CommandError(f"Bad --origin: {exc}") from None
        accounts = ensure_demo_accounts()
        # The command is where the apps meet: the handoff app seeds its own demo data.
        from handoff.demo import ensure_demo_agents

        ensure_demo_agents(site)

        state = "created" if created else "already present"
        self.stdout.write(f"Demo site: {site.name} ({state})")
        self.stdout.write(f"Widget key: {site.key}")
        self.stdout.write(f"Allowed origins: {', '.join(site.allowed_origins)}")
        self.stdout.write(f"Knowledge-base articles: {site.articles.count()}")
        self.stdout.write("")
        self.stdout.write(f"Demo accounts (passwords kept in {credentials_file()}):")
        width = max(len(username) for username, _, _ in accounts)
        for username, role, password in accounts:
            shown = password or (
                f"(unknown: not created by seed_demo; "
                f"set one with `manage.py changepassword {username}`)"
            )
            self.stdout.write(f"  {username:<{width}}  {shown}  {role}")
        if options["base_url"]:
            base = options["base_url"].rstrip("/")
            self.stdout.write("")
            self.stdout.write(f"Demo page:     {base}/demo/")
            self.stdout.write(f"Admin:         {base}/admin/")
            self.stdout.write("Embed snippet (add the page's origin to the site first):")
            self.stdout.write(
                f'  <script src="{base}/widget.js" data-site-key="{site.key}" async></script>'
            )
            self.stdout.write("")
