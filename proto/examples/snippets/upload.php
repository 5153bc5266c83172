<?php
// mediafleet from PHP (plain ext-curl, no Composer): a streamed upload with an Idempotency-Key, a presigned
// direct upload to S3, polling, and the webhook signature check your callback endpoint should run.
//
//   MEDIAFLEET_URL=http://127.0.0.1:8080 MEDIAFLEET_KEY=mfk_… php upload.php photo.jpg

function mf_request(string $method, string $url, array $headers = [], $body = null): array {
    $ch = curl_init($url);
    curl_setopt_array($ch, [
        CURLOPT_CUSTOMREQUEST => $method,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_TIMEOUT => 120,
    ]);
    if ($body !== null) {
        curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
    }
    $out = curl_exec($ch);
    if ($out === false) {
        throw new RuntimeException(curl_error($ch));
    }
    $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    curl_close($ch);
    return [$status, json_decode($out, true)];
}

/** Checks `Mediafleet-Signature: t=<unix>,v1=<hex>` on a webhook request body. */
function mf_verify_webhook(string $secret, string $header, string $body, int $tolerance = 300): bool {
    $parts = [];
    foreach (explode(',', $header) as $kv) {
        [$k, $v] = array_pad(explode('=', trim($kv), 2), 2, '');
        $parts[$k] = $v;
    }
    if (!isset($parts['t'], $parts['v1']) || abs(time() - (int)$parts['t']) > $tolerance) {
        return false;
    }
    $expected = hash_hmac('sha256', $parts['t'] . '.' . $body, $secret);
    return hash_equals($expected, $parts['v1']);
}

$base = getenv('MEDIAFLEET_URL') ?: 'http://127.0.0.1:8080';
$auth = getenv('MEDIAFLEET_KEY') ? ['Authorization: Bearer ' . getenv('MEDIAFLEET_KEY')] : [];
$file = $argv[1];

// 1. Streamed upload; the Idempotency-Key makes a retry return the same media.
$key = 'php-' . bin2hex(random_bytes(8));
[$status, $a] = mf_request('POST', "$base/v1/uploads", array_merge($auth, ["Idempotency-Key: $key"]),
    ['file' => new CURLFile($file), 'external_id' => 'php-1']);
[$status2, $again] = mf_request('POST', "$base/v1/uploads", array_merge($auth, ["Idempotency-Key: $key"]),
    ['file' => new CURLFile($file), 'external_id' => 'php-1']);
if ($status !== 202 || $again['id'] !== $a['id']) {
    fwrite(STDERR, "upload failed or retry was not idempotent\n");
    exit(1);
}
echo "uploaded {$a['id']}\n";

// 2. Presigned direct upload: PUT to S3 with the listed headers, then complete.
$req = json_encode(['filename' => basename($file), 'content_type' => 'image/jpeg', 'bytes' => filesize($file)]);
[$status, $p] = mf_request('POST', "$base/v1/uploads/presign", array_merge($auth, ['Content-Type: application/json']), $req);
$headers = [];
foreach ($p['upload']['headers'] as $k => $v) {
    $headers[] = "$k: $v";
}
[$put] = mf_request('PUT', $p['upload']['url'], $headers, file_get_contents($file));
mf_request('POST', "$base/v1/uploads/{$p['id']}/complete", $auth, '');
echo "presigned {$p['id']}\n";

// 3. Poll until final (in production: receive the webhook and check it with mf_verify_webhook()).
$secret = 'whsec-demo';
$sample = '{"id":"x"}';
$t = time();
assert(mf_verify_webhook($secret, "t=$t,v1=" . hash_hmac('sha256', "$t.$sample", $secret), $sample));
foreach ([$a['id'], $p['id']] as $id) {
    for ($i = 0; $i < 300; $i++) {
        [, $m] = mf_request('GET', "$base/v1/media/$id", $auth);
        if (in_array($m['status'], ['ready', 'failed'], true)) {
            break;
        }
        usleep(200000);
    }
    echo "$id {$m['status']}\n";
    if ($m['status'] !== 'ready') {
        exit(1);
    }
}
