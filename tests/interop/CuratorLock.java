import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.RetryOneTime;

/** Curator's InterProcessMutex from the shell: CuratorLock CONNECT PATH TIMEOUT_S.
 *  Prints "acquired" (then releases on a line of stdin and prints "released") or "timeout". */
public class CuratorLock {
    public static void main(String[] args) throws Exception {
        CuratorFramework client = CuratorFrameworkFactory.newClient(
            args[0], 10000, 10000, new RetryOneTime(100));
        client.start();
        client.blockUntilConnected();
        InterProcessMutex mutex = new InterProcessMutex(client, args[1]);
        boolean got = mutex.acquire(Long.parseLong(args[2]), TimeUnit.SECONDS);
        System.out.println(got ? "acquired" : "timeout");
        System.out.flush();
        if (got) {
            new BufferedReader(new InputStreamReader(System.in)).readLine();
            mutex.release();
            System.out.println("released");
            System.out.flush();
        }
        client.close();
    }
}
