import Foundation

/// libvirt domain XML for a `vm-boot=firmware` disk, one per firmware, beside it in `vm/`:
/// `virsh define vm/libvirt-uefi.xml` (or `-bios`) then `virsh start NAME`. q35, 1 GiB, 2 vCPUs,
/// the disk as virtio (its absolute path: libvirt's schema wants one), a virtio NIC on libvirt's
/// `default` network, the serial console on a pty, a virtio RNG. UEFI asks for firmware
/// autoselection (`<os firmware='efi'>`, secure boot off: GRUB here is not signed), which libvirt
/// resolves with the firmware descriptors in /usr/share/qemu/firmware; BIOS is SeaBIOS, the
/// default. The EXPOSEd ports are kept in `<metadata>`.
public enum LibvirtDomain {
    public enum Firmware: String, CaseIterable, Sendable { case uefi, bios }

    public static func xml(name: String, disk: String, firmware: Firmware, exposedPorts: [String], memoryMiB: Int = 1024, cpus: Int = 2) -> String {
        let os = firmware == .uefi
            ? """
                <os firmware='efi'>
                  <type arch='x86_64' machine='q35'>hvm</type>
                  <firmware>
                    <feature enabled='no' name='secure-boot'/>
                  </firmware>
                  <boot dev='hd'/>
                </os>
              """
            : """
                <os>
                  <type arch='x86_64' machine='q35'>hvm</type>
                  <boot dev='hd'/>
                </os>
              """
        let ports = exposedPorts.map { "        <imgbench:port>\(escape($0))</imgbench:port>\n" }.joined()
        return """
            <domain type='kvm'>
              <name>\(escape(name))</name>
              <metadata>
                <imgbench:image xmlns:imgbench='urn:imgbench:1'>
                  <imgbench:exposed-ports>
            \(ports)      </imgbench:exposed-ports>
                </imgbench:image>
              </metadata>
              <memory unit='MiB'>\(memoryMiB)</memory>
              <vcpu>\(cpus)</vcpu>
            \(os)
              <features>
                <acpi/>
                <apic/>
              </features>
              <on_poweroff>destroy</on_poweroff>
              <on_reboot>restart</on_reboot>
              <on_crash>destroy</on_crash>
              <devices>
                <disk type='file' device='disk'>
                  <driver name='qemu' type='qcow2'/>
                  <source file='\(escape(disk))'/>
                  <target dev='vda' bus='virtio'/>
                </disk>
                <interface type='network'>
                  <source network='default'/>
                  <model type='virtio'/>
                </interface>
                <serial type='pty'>
                  <target port='0'/>
                </serial>
                <console type='pty'>
                  <target type='serial' port='0'/>
                </console>
                <rng model='virtio'>
                  <backend model='random'>/dev/urandom</backend>
                </rng>
              </devices>
            </domain>

            """
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&apos;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
