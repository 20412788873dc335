# A helper.path of the user's own wins over the module's default (helperPackage's binary).
{
  imports = [ ./minimal.nix ];
  services.podspawn.settings.helper.path = "/opt/podspawn/podspawn-helper";
}
