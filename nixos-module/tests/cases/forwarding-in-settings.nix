# security.port_forwarding set in settings, disagreeing with services.podspawn.portForwarding.
{ imports = [ ./minimal.nix ]; services.podspawn.settings.security.port_forwarding = "off"; }
