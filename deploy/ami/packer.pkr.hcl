# Bake nagare into an AMI from the .deb that `bash scripts/release.sh` writes into dist/:
#   bash scripts/release.sh && packer build deploy/ami/packer.pkr.hcl
# The package installs /usr/bin/nagare, the nagare user and the hardened unit, enabled but not started: the
# agent first runs at the instance's boot, so no journal position of the build instance is baked into the image.
# The AMI's config then replaces the package's default; dpkg keeps it, as a changed conffile, on upgrades.
# An Amazon Linux 2023 base (dnf) takes the .rpm instead: package = "dist/nagare-0.1.0-1.x86_64.rpm",
# source_ami_filter name "al2023-ami-2023.*-x86_64" with owners ["137112412989"], ssh_username "ec2-user",
# and `sudo dnf install -y /tmp/${basename(var.package)}` in place of the apt-get line.
variable "package" {
  type        = string
  default     = "dist/nagare_0.1.0_amd64.deb"
  description = "The nagare package to install, as scripts/release.sh names it"
}

source "amazon-ebs" "nagare" {
  ami_name      = "base-with-nagare-{{timestamp}}"
  instance_type = "t3.small"
  region        = "eu-west-1"
  source_ami_filter {
    filters     = { name = "debian-12-amd64-*", virtualization-type = "hvm" }
    owners      = ["136693071363"]
    most_recent = true
  }
  ssh_username = "admin"
}

build {
  sources = ["source.amazon-ebs.nagare"]
  provisioner "file" {
    source      = var.package
    destination = "/tmp/${basename(var.package)}"
  }
  provisioner "file" {
    source      = "deploy/ami/nagare.yaml"
    destination = "/tmp/nagare.yaml"
  }
  provisioner "shell" {
    inline = [
      "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y /tmp/${basename(var.package)}",
      "sudo install -m 0640 -o root -g nagare /tmp/nagare.yaml /etc/nagare/nagare.yaml",
      "sudo -u nagare /usr/bin/nagare validate -c /etc/nagare/nagare.yaml",
      "systemctl is-enabled nagare.service",
    ]
  }
}
