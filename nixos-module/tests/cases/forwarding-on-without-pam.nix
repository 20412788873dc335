# portForwarding = "on" where sshd does not use PAM: refused.
{ lib, ... }: {
  imports = [ ./minimal.nix ];
  services.openssh.settings.UsePAM = lib.mkForce false;
  services.podspawn.portForwarding = "on";
}
