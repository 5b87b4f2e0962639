# Bake nagare into an AMI: the installer runs in the build instance, where systemd runs, so the unit is
# installed and enabled; the config is kept if the image already has one.
#   packer build deploy/ami/packer.pkr.hcl
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
    source      = "deploy/ami/nagare.yaml"
    destination = "/tmp/nagare.yaml"
  }
  provisioner "shell" {
    inline = [
      "sudo install -D -m 0640 /tmp/nagare.yaml /etc/nagare/nagare.yaml",
      "curl -fsSL https://github.com/nagare-dev/nagare/releases/latest/download/install.sh | sudo sh -s -- --no-start",
    ]
  }
}
