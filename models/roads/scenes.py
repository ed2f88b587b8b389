"""Seeded synthetic road scenes for the detection demo: scene(rng) -> (image uint8 [96, 96, 3] RGB,
boxes [(x1, y1, x2, y2, label)]). A sky, grass, a road in perspective with dashed lane marks;
trees, houses and random clutter as distractors; 1-5 objects: cars (bodies of many colours, dark
windows, wheels) on the road, pedestrians (head, body, legs) beside or on it, road signs (red
octagons and circles, yellow triangles, blue squares on a pole: the plate is the box). Sizes
grow towards the bottom (nearer). Drawn with PIL; pixel noise on top."""
import numpy as np
from PIL import Image, ImageDraw

LABELS = ["car", "pedestrian", "sign"]
SIZE = 96


def colour(rng, lo=0, hi=255):
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def overlaps(box, boxes, limit=0.05):
    x1, y1, x2, y2 = box
    for b in boxes:
        ix = max(0, min(x2, b[2]) - max(x1, b[0]))
        iy = max(0, min(y2, b[3]) - max(y1, b[1]))
        inter = ix * iy
        union = (x2 - x1) * (y2 - y1) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        if union > 0 and inter / union > limit:
            return True
    return False


def draw_car(d, rng, cx, bottom, scale):
    w, h = int(round(rng.uniform(12, 22) * scale)), int(round(rng.uniform(7, 11) * scale))
    x1, y1 = int(cx - w / 2), int(bottom - h)
    body = colour(rng, 30, 255)
    d.rectangle([x1, y1 + h // 3, x1 + w - 1, bottom - 2], fill=body)
    d.rectangle([x1 + w // 5, y1, x1 + w - 1 - w // 5, y1 + h // 3], fill=body)  # cabin
    d.rectangle([x1 + w // 5 + 1, y1 + 1, x1 + w - 2 - w // 5, y1 + h // 3], fill=(40, 50, 70))  # windows
    r = max(1, h // 5)
    for wx in (x1 + w // 5, x1 + w - 1 - w // 5):
        d.ellipse([wx - r, bottom - 2 * r - 1, wx + r, bottom - 1], fill=(15, 15, 15))
    return (x1, y1, x1 + w, bottom)


def draw_pedestrian(d, rng, cx, bottom, scale):
    h = int(round(rng.uniform(12, 18) * scale))
    w = max(3, int(round(h * rng.uniform(0.3, 0.4))))
    x1, y1 = int(cx - w / 2), int(bottom - h)
    head = max(1, h // 7)
    d.ellipse([cx - head, y1, cx + head, y1 + 2 * head], fill=(int(rng.integers(150, 240)), int(rng.integers(100, 180)), 90))
    d.rectangle([x1, y1 + 2 * head, x1 + w - 1, y1 + int(h * 0.6)], fill=colour(rng, 20, 255))
    legs = colour(rng, 10, 90)
    d.line([cx - 1, y1 + int(h * 0.6), x1, bottom - 1], fill=legs, width=max(1, w // 3))
    d.line([cx + 1, y1 + int(h * 0.6), x1 + w - 1, bottom - 1], fill=legs, width=max(1, w // 3))
    return (x1, y1, x1 + w, bottom)


def draw_sign(d, rng, cx, bottom, scale):
    s = int(round(rng.uniform(7, 11) * scale))
    pole = int(round(rng.uniform(6, 12) * scale))
    top = bottom - pole - s
    d.line([cx, top + s, cx, bottom - 1], fill=(120, 120, 120), width=max(1, s // 6))
    x1 = int(cx - s / 2)
    kind = rng.integers(0, 4)
    if kind == 0:  # stop: red octagon
        k = s / 3.4
        pts = [(x1 + k, top), (x1 + s - k, top), (x1 + s, top + k), (x1 + s, top + s - k), (x1 + s - k, top + s),
               (x1 + k, top + s), (x1, top + s - k), (x1, top + k)]
        d.polygon(pts, fill=(200, 20, 20), outline=(240, 240, 240))
    elif kind == 1:  # red ring
        d.ellipse([x1, top, x1 + s, top + s], fill=(210, 20, 20))
        m = max(1, s // 4)
        d.ellipse([x1 + m, top + m, x1 + s - m, top + s - m], fill=(245, 245, 245))
    elif kind == 2:  # warning: yellow triangle
        d.polygon([(x1 + s / 2, top), (x1 + s, top + s), (x1, top + s)], fill=(240, 200, 0), outline=(30, 30, 30))
    else:  # information: blue square
        d.rectangle([x1, top, x1 + s, top + s], fill=(20, 60, 200), outline=(240, 240, 240))
    return (x1, top, x1 + s + 1, top + s + 1)


def scene(rng):
    img = Image.new("RGB", (SIZE, SIZE))
    d = ImageDraw.Draw(img)
    horizon = int(rng.integers(26, 40))
    sky = colour(rng, 0, 60)
    d.rectangle([0, 0, SIZE, horizon], fill=(100 + sky[0], 140 + sky[1] // 2, 200 + sky[2] // 2))
    d.rectangle([0, horizon, SIZE, SIZE], fill=(int(rng.integers(40, 110)), int(rng.integers(100, 160)), int(rng.integers(30, 80))))
    vx = int(rng.integers(30, 66))  # vanishing point
    left, right = int(rng.integers(-30, 20)), int(rng.integers(76, 126))
    road = int(rng.integers(70, 120))
    d.polygon([(vx - 3, horizon), (vx + 3, horizon), (right, SIZE), (left, SIZE)], fill=(road, road, road + 5))
    for t0 in np.arange(0.1, 1.0, 0.16):  # dashed centre line
        t1 = t0 + 0.07
        y0, y1 = horizon + t0 * (SIZE - horizon), horizon + t1 * (SIZE - horizon)
        x0, x1 = vx + t0 * ((left + right) / 2 - vx), vx + t1 * ((left + right) / 2 - vx)
        d.line([x0, y0, x1, y1], fill=(235, 235, 235), width=max(1, int(3 * t1)))

    def road_edges(y):
        t = (y - horizon) / (SIZE - horizon)
        return vx - 3 + t * (left - vx + 3), vx + 3 + t * (right - vx - 3)

    for _ in range(int(rng.integers(0, 3))):  # houses on the horizon
        w, h = int(rng.integers(10, 22)), int(rng.integers(8, 16))
        x = int(rng.integers(0, SIZE - w))
        d.rectangle([x, horizon - h, x + w, horizon], fill=colour(rng, 80, 230))
        d.polygon([(x - 1, horizon - h), (x + w + 1, horizon - h), (x + w // 2, horizon - h - h // 2)], fill=colour(rng, 60, 160))
    for _ in range(int(rng.integers(1, 5))):  # trees on the grass
        y = int(rng.integers(horizon + 4, SIZE))
        a, b = road_edges(y)
        x = int(rng.uniform(0, max(1, a - 4))) if rng.random() < 0.5 else int(rng.uniform(min(SIZE - 1, b + 4), SIZE))
        r = int(rng.integers(3, 8))
        d.rectangle([x - 1, y - r, x + 1, y], fill=(90, 60, 30))
        d.ellipse([x - r, y - 3 * r, x + r, y - r], fill=(20, int(rng.integers(90, 150)), 30))
    for _ in range(int(rng.integers(0, 6))):  # clutter
        x, y = int(rng.integers(0, SIZE)), int(rng.integers(horizon, SIZE))
        s = int(rng.integers(2, 6))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)([x, y, x + s, y + int(rng.integers(1, 4))], fill=colour(rng))

    boxes = []
    for _ in range(int(rng.integers(1, 6))):
        kind = int(rng.choice(3, p=[0.45, 0.3, 0.25]))
        for _attempt in range(20):
            bottom = int(rng.integers(horizon + 12, SIZE))
            scale = 0.6 + 0.9 * (bottom - horizon) / (SIZE - horizon)
            a, b = road_edges(bottom)
            if kind == 0:
                cx = rng.uniform(a + 6, b - 6) if b - a > 14 else (a + b) / 2
            elif kind == 1:
                cx = rng.uniform(a - 10, b + 10)
            else:
                cx = a - rng.uniform(3, 10) if rng.random() < 0.5 else b + rng.uniform(3, 10)
            cx = int(np.clip(cx, 6, SIZE - 7))
            probe = Image.new("RGB", (SIZE, SIZE))
            box = [draw_car, draw_pedestrian, draw_sign][kind](ImageDraw.Draw(probe), np.random.default_rng(0), cx, bottom, scale)
            if box[0] < 0 or box[1] < horizon - 20 or box[2] > SIZE or box[3] > SIZE or overlaps(box, boxes):
                continue
            box = [draw_car, draw_pedestrian, draw_sign][kind](d, rng, cx, bottom, scale)
            box = (max(0, box[0]), max(0, box[1]), min(SIZE, box[2]), min(SIZE, box[3]))
            if not overlaps(box, boxes):
                boxes.append(box + (kind,))
            break
    a = np.asarray(img).astype(np.int16) + rng.normal(0, 4, (SIZE, SIZE, 3)).astype(np.int16)
    return np.clip(a, 0, 255).astype(np.uint8), boxes
