import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/** Whether a process with this pid exists on this host (EPERM: it exists but belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let machine: string | undefined | null = null;

/**
 * Which process table this process's pids belong to: the host name, the kernel's boot id and the pid
 * namespace. Host names alone repeat across cloned VMs and containers (with host networking, or set
 * alike), where a pid says nothing of a process elsewhere. Undefined where /proc cannot say: then no
 * other process is known to share this one's pids.
 */
export function machineId(): string | undefined {
  if (machine === null) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      machine = `${hostname()}/${boot}/${readlinkSync('/proc/self/ns/pid')}`;
    } catch {
      machine = undefined;
    }
  }
  return machine;
}

/**
 * When the process with this pid started (clock ticks since boot, /proc/<pid>/stat's 22nd field), or
 * undefined where /proc cannot say: with the pid, it names one process, even once the pid is reused.
 */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields 3 on follow the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
