# services.podspawn.helperPackage = null: no helper, and helper.path "" turns the mount off.
{
  imports = [ ./minimal.nix ];
  services.podspawn.helperPackage = null;
}
